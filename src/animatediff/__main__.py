import sys

from animatediff.cli import main

sys.exit(main())

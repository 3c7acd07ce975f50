from animatediff.cli import console

console()

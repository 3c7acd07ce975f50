"""The lab: what regenerates the repository's measurements of the embedded shapes-world models.

`animatediff shapes results` (`report`) writes docs/results.md and its GIFs; `animatediff shapes ablations`
(`ablations`) writes docs/ablations.json, the paper's claims measured; `time_report` and `control_report`
are the long-video and conditioning rows of results.md. The lab is a client of the installed package and
lives only in a clone (it is not installed by `pip install .`): those two commands import it from here.
"""

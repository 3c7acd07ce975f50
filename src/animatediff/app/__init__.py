"""The web app and HTTP API (`animatediff serve`): a gradio page mounted in a FastAPI app, both calling the
library the command line calls (`generation.OutputMaker`, with the `Settings` the sidecar records).

- `catalog`: the models offered, by name: the embedded ones and the checkpoints of one models folder. The
  browser and API clients only ever send these names; a name not in the lists is refused.
- `requests`: what a client may ask for, checked against configurable limits, and turned into `Settings`.
- `jobs`: a bounded queue with one worker per device; every accepted job keeps its record (state,
  progress, settings, error) in the outputs folder.
- `server`: the FastAPI routes and the page.
"""

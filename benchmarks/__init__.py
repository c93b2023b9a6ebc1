"""`seedance-pipeline bench`: developer tooling that measures whether the pipeline is ever the
bottleneck. It lives beside the package, not in it: it is not shipped in the wheel.

`runner` holds the command line and runs each case in its own process; `harness` what the cases
share (the emulator process, images, catalogs, timing, `Result`); one module per case; `steps` the
pipeline functions the cases time.
"""

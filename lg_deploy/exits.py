"""The exit status of every lg-deploy command, as `lg-deploy --help` and the README list them."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # the execution FAILED; for serve and worker, the start failed
EXIT_CONFIG = 2  # bad settings; argparse exits with the same code for bad arguments
EXIT_NOT_FINAL = 3
EXIT_UNREACHABLE = 4
EXIT_SERVER_ERROR = 5
EXIT_SECOND_SIGNAL = 130  # 128 + SIGINT, as a shell reports an interrupted command

EXIT_STATUS_HELP = """\
exit status:
  0    success
  1    the execution FAILED (submit --wait, wait); serve or worker could not start
  2    bad usage or configuration: arguments, settings, --input that is not JSON
  3    the execution was not final when the wait ended (submit --wait, wait)
  4    the server cannot be reached
  5    the server answered with an error (404 unknown execution, 409, 422, 5xx)
  130  serve or worker stopped at once by a second SIGTERM/SIGINT
"""

import logging
import sys

from .cli import main

# Logs to stderr: stdout carries only the JSON lines.
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
raise SystemExit(main())

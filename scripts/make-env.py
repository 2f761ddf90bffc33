"""Create .env from .env.example with a fresh PROXY_API_KEY, printed once. Never overwrites.

Standard library only, so `make .env` works on a fresh clone before any virtualenv exists."""
import os
import re
import secrets
import sys
from pathlib import Path

target = Path(sys.argv[1] if len(sys.argv) > 1 else ".env")
if target.exists():
    sys.exit(0)
example = (Path(__file__).resolve().parent.parent / ".env.example").read_text(encoding="utf-8")
key = secrets.token_urlsafe(32)
text, n = re.subn(r"(?m)^PROXY_API_KEY=.*$", lambda _: f"PROXY_API_KEY={key}", example, count=1)
if n != 1:
    sys.exit(".env.example has no PROXY_API_KEY= line")
fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
with os.fdopen(fd, "w", encoding="utf-8") as f:
    f.write(text)
print(f"Created {target} with a new PROXY_API_KEY (shown once, keep it):\n  {key}")

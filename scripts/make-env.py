"""Create .env from .env.example with a fresh PROXY_API_KEY, printed once. Never overwrites."""
import secrets
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from api import envfile  # noqa: E402

target = Path(sys.argv[1] if len(sys.argv) > 1 else ".env")
if target.exists():
    sys.exit(0)
shutil.copyfile(Path(__file__).resolve().parent.parent / ".env.example", target)
target.chmod(0o600)
key = secrets.token_urlsafe(32)
envfile.set_value(target, key, key="PROXY_API_KEY")
print(f"Created {target} with a new PROXY_API_KEY (shown once, keep it):\n  {key}")

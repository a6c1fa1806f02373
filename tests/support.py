"""Constants shared by tests (import as `from support import ...`; conftest files are not modules to import)."""

import sys
from pathlib import Path

# Long and key-shaped on purpose: the stub server echoes it in 401 bodies, and it must never come back out.
TEST_API_KEY = "sk-test-0123456789abcdefSECRET"
WRONG_API_KEY = "sk-wrong-9876543210zyxwvuSECRET"
STUDYLLM_EXE = str(Path(sys.executable).with_name("studyllm"))

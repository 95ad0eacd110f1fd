"""What the installed environment must (not) contain for grading to stay fast."""

import subprocess
import sys


def test_importing_nbformat_does_not_build_an_iri_parser():
    """jsonschema >= 4.25 imports rfc3987-syntax, which compiles a grammar at import time (4 s on a
    2-core machine, paid by every nbgrader command and every `course grade`); pyproject pins it."""
    probe = "import sys, nbformat; print('rfc3987_syntax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

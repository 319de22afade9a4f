"""Every script in examples/ runs to the end (each checks its own claims with asserts) and prints no warning."""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script):
    env = dict(os.environ, FASTGAN_EXAMPLE_SMALL="1")  # examples that time things use small sizes
    # this checkout's fastgan, even where another one is installed (a script's own folder comes first on its path)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout}\n{done.stderr}"
    assert "Warning" not in done.stderr, f"{script.name} printed a warning:\n{done.stderr}"

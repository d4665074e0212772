"""conftest.py's isolation and data location, checked in a pytest run with a hostile environment."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

INNER_TESTS = textwrap.dedent('''
    import os
    from pathlib import Path

    import pytest

    SEEN = []


    @pytest.fixture(scope="module")
    def module_home():
        return os.environ["NIN_KERAS_HOME"]


    @pytest.mark.parametrize("run", [0, 1])
    def test_isolated(run, tmp_path, datasets_dir, isolated_env, module_home):
        for name in ("NIN_KERAS_MIRROR", "NIN_KERAS_OFFLINE", "KERAS_HOME"):
            assert name not in os.environ
        home = Path(os.environ["NIN_KERAS_HOME"])
        assert home == isolated_env and not home.is_relative_to(tmp_path)  # tmp_path stays the test's
        assert home.parent == tmp_path.parent and list(tmp_path.iterdir()) == []
        assert datasets_dir == Path("/data/sets") == Path(os.environ["NIN_KERAS_DATA_DIR"])
        assert Path(module_home) != home  # module fixtures: the session home
        # Decoded data sets outlive the test: both tests see the file the first one wrote.
        (home / "datasets" / f"decoded{run}.npz").write_bytes(b"x")
        assert {p.name for p in (home / "datasets").iterdir()} == {f"decoded{i}.npz" for i in range(run + 1)}
        assert (Path(module_home) / "datasets").resolve() == (home / "datasets").resolve()
        SEEN.append(home)
        assert len(set(SEEN)) == run + 1  # a fresh home per test


    class TestOverride:
        @pytest.fixture
        def nin_keras_home(self, tmp_path):
            return tmp_path / "cache"

        def test_module_chooses_its_folder(self, tmp_path):
            assert os.environ["NIN_KERAS_HOME"] == str(tmp_path / "cache")
            assert not (tmp_path / "cache").exists()  # nothing shared, nothing made in advance
''')


def test_isolation_and_data_location_in_a_hostile_environment(tmp_path):
    shutil.copy2(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    env = {**os.environ, "NIN_KERAS_MIRROR": "http://127.0.0.1:9/", "NIN_KERAS_OFFLINE": "1",
           "KERAS_HOME": str(tmp_path / "keras_home"), "NIN_KERAS_DATA_DIR": "/data/sets",
           "NIN_KERAS_HOME": str(tmp_path / "user_home")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_inner.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout
    assert not (tmp_path / "user_home").exists() and not (tmp_path / "keras_home").exists()

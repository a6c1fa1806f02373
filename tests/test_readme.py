"""The README's Quickstart and CI run the same commands, so CI proves what the README promises."""

from support import ROOT, quickstart_commands


def test_quickstart_has_install_main_job_and_tests():
    install, main_job, tests = quickstart_commands()
    assert "pip install" in install and main_job.startswith(".venv/bin/studyllm ") and "pytest" in tests


def test_ci_runs_the_readme_install_and_test_commands():
    install, _, tests = quickstart_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert install in ci_lines
    assert tests in ci_lines

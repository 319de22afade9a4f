"""A pytest plugin for the GPU check (gpu_check.sh loads it with `-p gpu_pytest_plugin`): on the GPU machine every
selected test must run, so a skip, of a test or of a whole module, is reported as a failure with its reason."""
import pytest

NOTE = "skipped, which the GPU check does not allow (on the GPU machine every selected test must run)"


def _reason(report):
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _fail(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"{NOTE}: {_reason(report)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail(outcome.get_result())

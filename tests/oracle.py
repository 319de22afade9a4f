"""The one torch-oracle helper, shipped in the package as fastgan.testing; the tests import it from here."""
from fastgan.testing import TOLERANCE, assert_close, check, check_twice, gradcheck, random_inputs  # noqa: F401

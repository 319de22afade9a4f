"""Which dtype a binary op computes in: torch's type-promotion rule, in one place (every binary op asks here).

dtypes fall into categories, bool < integer < floating. Two dtypes promote to the wider one within a category
and to the higher category's across them (int64 ⊕ float32 -> float32, where NumPy would say float64).

Operands rank by how much their dtype says about the result:
    1. tensors with at least one dimension,
    2. zero-dimensional tensors ("dimensionless"),
    3. Python numbers, which count as the default dtype of their kind (float -> float32, int -> int64, bool).
The result is the promotion of the highest rank present; a lower rank changes it only when it holds a higher
category, and then it is promoted in:
    int64 tensor * 2.5              -> float32     (a float number lifts integers to the default float dtype)
    float32 tensor + 1e300          -> float32     (a number never widens a tensor of its own category)
    float32 tensor + float64 tensor -> float64     (two tensors with dimensions: the wider one)
    float32 tensor + float64 0-d    -> float32     (a 0-d tensor of the same category does not widen)
    int64 tensor + float64 0-d      -> float64     (a 0-d tensor of a higher category does)
NumPy arrays count as tensors, NumPy scalars as Python numbers.
"""
import numbers

import numpy as np

DEFAULT_FLOAT = np.dtype(np.float32)
DEFAULT_INT = np.dtype(np.int64)
_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}


def category(dtype):
    """0 for bool, 1 for integers, 2 for floating point."""
    try:
        return _CATEGORY[np.dtype(dtype).kind]
    except KeyError:
        raise TypeError(f"unsupported dtype {np.dtype(dtype)}: fastgan computes with bool, integer and floating "
                        "point tensors") from None


def promote_types(a, b):
    """The dtype that holds both: the higher category's, or the wider of one category (torch.promote_types)."""
    if a is None or b is None:
        return b if a is None else a
    a, b = np.dtype(a), np.dtype(b)
    if category(a) != category(b):
        return a if category(a) > category(b) else b
    return np.promote_types(a, b)


def _number_dtype(value):
    if isinstance(value, (bool, np.bool_)):
        return np.dtype(bool)
    if isinstance(value, (numbers.Integral, np.integer)):
        return DEFAULT_INT
    if isinstance(value, (numbers.Real, np.floating)):
        return DEFAULT_FLOAT
    raise TypeError(f"expected a tensor, an array or a real number, got {type(value).__name__}")


def _combine(higher, lower):
    """A higher rank's dtype, unless the lower rank holds a higher category: then both promoted."""
    if higher is None or lower is None:
        return lower if higher is None else higher
    return promote_types(higher, lower) if category(lower) > category(higher) else higher


def result_type(*operands):
    """The dtype of `a ⊕ b ⊕ ...` for tensors, arrays (anything with .dtype and .ndim) and Python numbers."""
    dimensioned = dimensionless = number = None
    for value in operands:
        if isinstance(value, (numbers.Number, np.generic)):
            number = promote_types(number, _number_dtype(value))
        elif value.ndim:
            dimensioned = promote_types(dimensioned, value.dtype)
        else:
            dimensionless = promote_types(dimensionless, value.dtype)
    return _combine(dimensioned, _combine(dimensionless, number))

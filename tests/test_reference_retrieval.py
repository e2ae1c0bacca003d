"""Lesson 01's reference kernels (numpy) against scipy and the textbook formula."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax as scipy_softmax

from autograder.reference import attend, softmax

FAST = settings(max_examples=25, deadline=None)


@st.composite
def array_and_axis(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    scale = draw(st.sampled_from([0.1, 1.0, 10.0, 1e4]))
    x = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).normal(size=shape) * scale
    return x, axis


@FAST
@given(array_and_axis())
def test_softmax_matches_scipy(case):
    """Does softmax equal scipy's along any axis, large scales included?"""
    x, axis = case
    np.testing.assert_allclose(softmax(x, axis=axis), scipy_softmax(x, axis=axis), atol=1e-12)


@FAST
@given(array_and_axis())
def test_softmax_is_a_distribution(case):
    """Are softmax outputs finite, non-negative and summing to one along the axis?"""
    x, axis = case
    p = softmax(x * 1e4, axis=axis)
    assert np.isfinite(p).all() and (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=axis), 1.0)


def test_softmax_large_inputs_stay_finite():
    """Do scores like 1e4 give finite weights instead of inf/NaN?"""
    p = softmax(np.array([1e4, 1e4 + 1.0, -1e4]))
    np.testing.assert_allclose(p, scipy_softmax(np.array([0.0, 1.0, -2e4])))


def test_softmax_accepts_lists_and_default_axis():
    """Does softmax take a nested list and normalise the last axis by default?"""
    np.testing.assert_allclose(softmax([[0.0, 0.0], [1.0, 1.0]]), np.full((2, 2), 0.5))


@st.composite
def retrieval_case(draw):
    n, d, d_v = draw(st.integers(1, 8)), draw(st.integers(1, 8)), draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.normal(size=d), rng.normal(size=(n, d)), rng.normal(size=(n, d_v))


@FAST
@given(retrieval_case())
def test_attend_matches_direct_formula(case):
    """Does attend weight the values by softmax(keys @ query), with unscaled scores?"""
    query, keys, values = case
    output, weights = attend(query, keys, values)
    want_w = scipy_softmax(np.array([key @ query for key in keys]))
    want_out = sum(w * value for w, value in zip(want_w, values, strict=True))
    assert weights.shape == (len(keys),) and output.shape == (values.shape[1],)
    np.testing.assert_allclose(weights, want_w, atol=1e-12)
    np.testing.assert_allclose(output, want_out, atol=1e-12)


def test_attend_retrieves_the_matching_key():
    """Does a query that matches one key strongly return (almost) that key's value?"""
    keys = np.eye(3) * 20
    values = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    output, weights = attend(keys[1] / 20, keys, values)
    assert weights.argmax() == 1
    np.testing.assert_allclose(output, values[1], atol=1e-6)


def test_attend_rejects_a_batch_of_queries():
    """Does attend say clearly that it takes one query vector, not a matrix?"""
    with pytest.raises(ValueError, match="query"):
        attend(np.ones((2, 3)), np.ones((4, 3)), np.ones((4, 2)))

import numpy as np
import pytest

from nudge_sync.core.answers import Answers, as_answers


def test_from_lists_builds_sorted_csr():
    a = Answers.from_lists([[5, 2], [], [7]])
    assert a.indptr.tolist() == [0, 2, 2, 3]
    assert a.ids.tolist() == [2, 5, 7]
    assert a.ids.dtype == np.int64 and a.indptr.dtype == np.int64
    assert a.grades is None
    assert len(a) == 3
    assert a.row(0).tolist() == [2, 5] and a.row(1).tolist() == [] and a.row(2).tolist() == [7]
    assert a.row_grades(0).tolist() == [1.0, 1.0]
    assert a.lengths().tolist() == [2, 0, 1]
    assert a.row_index().tolist() == [0, 0, 2]
    assert a.tolist() == [[2, 5], [], [7]]


def test_grades_follow_their_ids_when_sorted():
    a = Answers.from_lists([[9, 1, 4]], grades=[[3.0, 1.0, 2.0]])
    assert a.ids.tolist() == [1, 4, 9]
    assert a.grades.tolist() == [1.0, 2.0, 3.0]


def test_duplicates_are_merged_keeping_the_max_grade():
    a = Answers.from_lists([[3, 1, 3], [2, 2]], grades=[[1.0, 2.0, 5.0], [4.0, 0.5]])
    assert a.ids.tolist() == [1, 3, 2]
    assert a.grades.tolist() == [2.0, 5.0, 4.0]
    assert a.indptr.tolist() == [0, 2, 3]


def test_none_grade_row_means_ones():
    a = Answers.from_lists([[1], [2, 3]], grades=[None, [2.0, 3.0]])
    assert a.grades.tolist() == [1.0, 2.0, 3.0]


def test_from_csr_equals_from_lists_and_validates():
    a = Answers.from_csr([0, 2, 3], [4, 1, 0], [1.0, 2.0, 3.0])
    assert a == Answers.from_lists([[4, 1], [0]], [[1.0, 2.0], [3.0]])
    with pytest.raises(ValueError, match="indptr"):
        Answers.from_csr([0, 3, 2], [1, 2])
    with pytest.raises(ValueError, match="indptr"):
        Answers.from_csr([1, 2], [1, 2])
    with pytest.raises(ValueError, match="grades has 1 values"):
        Answers.from_csr([0, 2], [1, 2], [1.0])


@pytest.mark.parametrize(
    "lists, grades, match",
    [
        ([[1, -2]], None, "non-negative"),
        ([[1.5]], None, "integers"),
        ([["a"]], None, "integers"),
        ([[1]], [[0.0]], "row 0 has grade 0.0"),
        ([[1], [2]], [[1.0], [float("nan")]], "row 1"),
        ([[1, 2]], [[1.0]], "grades row 0 has 1 values"),
        ([[1]], [[1.0], [2.0]], "grades has 2 rows"),
    ],
)
def test_invalid_inputs_raise_clear_errors(lists, grades, match):
    with pytest.raises(ValueError, match=match):
        Answers.from_lists(lists, grades)


def test_integral_floats_are_accepted_as_ids():
    assert Answers.from_lists([[2.0, 1.0]]).ids.tolist() == [1, 2]


def test_drop_empty_and_take():
    a = Answers.from_lists([[1], [], [3, 2], []], [[2.0], [], [1.0, 4.0], []])
    kept, rows = a.drop_empty()
    assert rows.tolist() == [0, 2]
    assert kept.tolist() == [[1], [2, 3]]
    assert kept.grades.tolist() == [2.0, 4.0, 1.0]
    t = a.take([2, 0, 2])
    assert t.tolist() == [[2, 3], [1], [2, 3]]
    assert t.grades.tolist() == [4.0, 1.0, 2.0, 4.0, 1.0]


def test_as_answers():
    a = Answers.from_lists([[1]])
    assert as_answers(a) is a
    assert as_answers([[2, 1]]).tolist() == [[1, 2]]
    with pytest.raises(ValueError, match="val_answers"):
        as_answers([[-1]], "val_answers")
    with pytest.raises(ValueError, match="required"):
        as_answers(None)

"""The mesh mirror table: an involution consistent with MediaPipe's own left/right landmark sets."""

from __future__ import annotations

import numpy as np
import pytest

from sym3d_extras.faces._mesh_data import MIDLINE, MIRROR_PAIRS, mirror_permutation
from tests.extras.faces.conftest import HAS_MEDIAPIPE


def test_mirror_permutation_is_an_involution():
    for n in (468, 478):
        p = mirror_permutation(n)
        assert sorted(p) == list(range(n))
        np.testing.assert_array_equal(p[p], np.arange(n))
    p = mirror_permutation()
    assert set(np.nonzero(p == np.arange(478))[0]) == set(MIDLINE)
    assert len(MIRROR_PAIRS) * 2 + len(MIDLINE) == 478
    with pytest.raises(ValueError, match="468 or 478"):
        mirror_permutation(100)


@pytest.mark.faces
@pytest.mark.skipif(
    not HAS_MEDIAPIPE, reason="needs the `faces` extra (mediapipe==0.10.21 is not installed)"
)
def test_mirror_table_matches_mediapipe_topology():
    from mediapipe.python.solutions import face_mesh_connections as conn

    p = mirror_permutation()

    def points(s):
        return {i for e in s for i in e}

    for left, right in [
        (conn.FACEMESH_LEFT_EYE, conn.FACEMESH_RIGHT_EYE),
        (conn.FACEMESH_LEFT_EYEBROW, conn.FACEMESH_RIGHT_EYEBROW),
        (conn.FACEMESH_LEFT_IRIS, conn.FACEMESH_RIGHT_IRIS),
        (conn.FACEMESH_LIPS, conn.FACEMESH_LIPS),
        (conn.FACEMESH_NOSE, conn.FACEMESH_NOSE),
        (conn.FACEMESH_FACE_OVAL, conn.FACEMESH_FACE_OVAL),
    ]:
        assert {int(p[i]) for i in points(left)} == points(right)
        assert {frozenset(int(p[i]) for i in e) for e in left} == {frozenset(e) for e in right}
    edges = {frozenset(e) for e in conn.FACEMESH_TESSELATION}
    kept = sum(frozenset(int(p[i]) for i in e) in edges for e in edges)
    assert (
        kept / len(edges) > 0.99
    )  # 1316 of 1322; the rest are diagonals split differently per side

"""Visible tests of lesson 06 (decoding): the check cells of decoding.ipynb.

    pytest assignments/06                                  # this folder's notebook
    pytest assignments/06 --notebook ~/work/decoding.ipynb # another copy
    pytest assignments/06 -k top_p_filter                  # one function
"""

from course.visible import visible_checks

test_decoding = visible_checks(__file__, "decoding.ipynb")

"""Visible tests of lesson 03 (causal attention): the check cells of attention.ipynb.

    pytest assignments/03                                   # this folder's notebook
    pytest assignments/03 --notebook ~/work/attention.ipynb # another copy
    pytest assignments/03 -k tiled_attention                # one function
"""

from course.visible import visible_checks

test_attention = visible_checks(__file__, "attention.ipynb")

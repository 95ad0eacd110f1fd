"""Visible tests of lesson 04 (GPT-2 from its parts): the check cells of gpt2.ipynb.

    pytest assignments/04                              # this folder's notebook
    pytest assignments/04 --notebook ~/work/gpt2.ipynb # another copy
    pytest assignments/04 -k GPT2                      # one function
"""

from course.visible import visible_checks

test_gpt2 = visible_checks(__file__, "gpt2.ipynb")

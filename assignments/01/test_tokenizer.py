"""Visible tests of lesson 01 (byte-level BPE tokenization): the check cells of tokenizer.ipynb.

    pytest assignments/01                                   # this folder's notebook
    pytest assignments/01 --notebook ~/work/tokenizer.ipynb # another copy
    pytest assignments/01 -k train_bpe                      # one function
"""

from course.visible import visible_checks

test_tokenizer = visible_checks(__file__, "tokenizer.ipynb")

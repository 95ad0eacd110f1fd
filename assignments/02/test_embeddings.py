"""Visible tests of lesson 02 (embeddings and language-model data): the check cells of embeddings.ipynb.

    pytest assignments/02                                    # this folder's notebook
    pytest assignments/02 --notebook ~/work/embeddings.ipynb # another copy
    pytest assignments/02 -k cross_entropy                   # one function
"""

from course.visible import visible_checks

test_embeddings = visible_checks(__file__, "embeddings.ipynb")

"""Visible tests of lesson 05 (pretraining): the check cells of pretraining.ipynb.

    pytest assignments/05                                      # this folder's notebook
    pytest assignments/05 --notebook ~/work/pretraining.ipynb  # another copy
    pytest assignments/05 -k train_step                        # one function
"""

from course.visible import visible_checks

test_pretraining = visible_checks(__file__, "pretraining.ipynb")

"""pytest settings shared by every lesson's visible tests (`pytest assignments` runs them all)."""


def pytest_addoption(parser):
    parser.addoption(
        "--notebook", default=None, metavar="PATH",
        help="check this notebook instead of the lesson's own (matched by file name, "
             "e.g. --notebook ~/work/attention.ipynb for lesson 03)",
    )

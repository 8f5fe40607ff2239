"""The distributional RD notebook runs end to end at small size."""


def test_rdd_notebook(run_notebook):
    run_notebook("rdd_distributions.ipynb")

"""The image-confounding notebook runs end to end at small size."""


def test_ipw_notebook_runs(run_notebook):
    run_notebook("ipw_image_confounding.ipynb")

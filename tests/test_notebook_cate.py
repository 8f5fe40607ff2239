"""The CATE notebook runs at small size."""


def test_cate_notebook_runs(run_notebook):
    run_notebook("cate_image_sequences.ipynb")

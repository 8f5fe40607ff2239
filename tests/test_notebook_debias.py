"""The debiasing notebook runs end to end at small size."""


def test_debias_notebook_executes(run_notebook):
    run_notebook("debias_predicted_outcomes.ipynb")

"""Trading: confidence and signals, the rule strategy, sizing, the perpetual-futures backtester,
baselines and KPIs. Dagster-free; the market rules are in :mod:`.backtest`'s docstring.
"""

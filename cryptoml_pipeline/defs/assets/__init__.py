"""Dagster assets: one module per domain, each module one asset group (its ``GROUP``).

======================  ===============  ==================================================
module                  group            assets
======================  ===============  ==================================================
``run_settings``        ``settings``     run_settings (the run's resolved settings)
``landing``             ``landing``      raw_*_daily (daily partitions, ccxt -> the store)
``ingestion``           ``ingestion``    ohlcv_raw, funding_raw, dataset_info, ohlcv, funding
``features``            ``features``     feature_table, label_table
``modeling``            ``modeling``     fold_plan, fold_model, fold_predictions (transformer)
``zoo``                 ``models``       <model>_predictions of the zoo, model_comparison
``importance``          ``importance``   feature_importance (per fold)
``controls``            ``controls``     shuffled_label_predictions (per fold)
``evaluation``          ``evaluation``   oos_predictions, backtest, backtest_report
``deployment``          ``deployment``   candidate_model, deployed_model, latest_signals
``tracking``            ``monitoring``   prediction_log, model_health
``experiments``         ``experiments``  experiment_predictions, experiment_leaderboard
======================  ===============  ==================================================
"""

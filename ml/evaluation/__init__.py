"""Evaluation on held-out data: folds, metrics and the one fit-and-score loop.

- `folds`: repeated K-fold stratified on the event indicator (`make_folds`, `Fold`);
- `metrics`: Harrell and Uno C, time-dependent AUC, Brier, IBS, calibration slope and
  table of one fold (`score_fold`); across resamples the corrected resampled-t CI and the
  leaderboard (`summarise`);
- `loop`: fit a model on a fold's training rows and score the held-out rows
  (`fit_and_score`), the one loop of the benchmark and the tuning;
- `parallel`: folds run serially or in worker processes, results in fold order (`map_folds`).
"""

"""Selection rules a grid file may declare before its sweep (the rule is recorded in the
leaderboard). Each rule names the leaderboard column it maximises over the configurations that
finished; ties go to the earlier configuration in grid order."""

from __future__ import annotations

SELECTION_RULES: dict[str, str] = {
    "best_walk_forward_net_sharpe": "walk_forward_net_sharpe",
    "best_walk_forward_rank_ic_t": "rank_ic_t",
    "best_cpcv_median_net_sharpe": "cpcv_median_net_sharpe",
}
DEFAULT_SELECTION_RULE = "best_walk_forward_net_sharpe"

# Share of stays by visitors from abroad, by season: two releases, post-processed.
stays = dataset("tourism_stays")
everyone = release(stays.group_by("season").count(), epsilon=0.25)
foreign = release(stays.filter(col("origin") != "france").group_by("season").count(), epsilon=0.25)
shares = {}
for all_row, foreign_row in zip(everyone, foreign, strict=True):
    shares[all_row["season"]] = round(
        100 * foreign_row["count"].value / max(all_row["count"].value, 1), 1
    )
result["foreign_share_pct_by_season"] = shares
result["foreign_stays_by_season"] = foreign

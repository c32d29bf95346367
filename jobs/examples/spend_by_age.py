# Typical spend per age band: a derived band (when/then), grouped, with medians and
# quartiles chosen among public candidate values (every 10 euros up to 3,000).
stays = dataset("tourism_stays")
banded = stays.with_columns(
    age_band=when(col("age") < 30)
    .then(1)
    .when(col("age") < 50)
    .then(2)
    .when(col("age") < 70)
    .then(3)
    .otherwise(4)
)
grid = list(range(0, 3001, 10))
rows = release(
    banded.group_by("age_band").agg(
        count(), quantile("spend_eur", [0.25, 0.5, 0.75], candidates=grid)
    ),
    epsilon=0.4,
)
labels = {1: "18-29", 2: "30-49", 3: "50-69", 4: "70+"}
result["spend_by_age"] = [
    {
        "ages": labels[r["age_band"]],
        "stays": r["count"],
        "q1": r["q25_spend_eur"],
        "median": r["median_spend_eur"],
        "q3": r["q75_spend_eur"],
    }
    for r in rows
]

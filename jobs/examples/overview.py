# Headline figures for the whole dataset, in one release (one composed cost).
stays = dataset("tourism_stays")
overview = release(
    stays.agg(count(), mean("nights"), mean("spend_eur"), sum("nights").alias("total_nights")),
    epsilon=0.5,
)
result["stays"] = overview["count"]
result["mean_nights"] = overview["mean_nights"]
result["mean_spend_eur"] = overview["mean_spend_eur"]
result["total_nights"] = overview["total_nights"]
# Post-processing of released values is free: no extra privacy cost.
result["spend_per_night_eur"] = round(
    overview["mean_spend_eur"].value / overview["mean_nights"].value, 2
)

# Stays per town, where towns are free text (no public list): only towns whose
# noisy count passes a threshold are released, which costs a little delta.
stays = dataset("tourism_stays")
towns = release(stays.group_by("town").agg(count(), mean("spend_eur")), epsilon=0.5, delta=1e-7)
result["towns_released"] = len(towns)
result["busiest"] = sorted(towns, key=lambda row: -row["count"].value)[:5]

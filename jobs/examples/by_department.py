# Stays and mean spend per department (public categories), for adults travelling
# in summer; then each department's share of stays, computed from released values.
stays = dataset("tourism_stays")
summer = stays.filter((col("season") == "summer") & (col("age") >= 18))
rows = release(
    summer.group_by("department").agg(count(), mean("spend_eur", bounds=(0, 3000))), epsilon=1.0
)
total = sum([row["count"] for row in rows])
for row in rows:
    row["share_pct"] = round(100 * row["count"].value / total, 1)
result["summer_by_department"] = sorted(rows, key=lambda r: -r["count"].value)

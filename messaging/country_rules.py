"""Load the destination-country rules shipped in messaging/data/country_rules.csv."""

import csv
from pathlib import Path

RULES_FILE = Path(__file__).parent / "data" / "country_rules.csv"
POLICIES = {"allowed", "registration", "unsupported"}


def read_rules(path: Path = RULES_FILE) -> list[dict[str, str]]:
    """Rows of the rules file, checked: a typo in the file must fail loudly, not allow a refused sender."""
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            code = row["country"].strip().upper()
            if len(code) != 2 or not code.isalpha():
                raise ValueError(f"{path.name}:{line}: {row['country']!r} is not a two-letter country code")
            for column in ("alphanumeric", "numeric"):
                if row[column] not in POLICIES:
                    raise ValueError(
                        f"{path.name}:{line}: {column}={row[column]!r}, expected one of {sorted(POLICIES)}"
                    )
            rows.append({**row, "country": code})
    return rows


def load_rules(country_rule_model, *, update: bool = False) -> tuple[int, int]:
    """Create missing countries; with update=True also overwrite staff edits. Returns (created, updated)."""
    created = updated = 0
    existing = set(country_rule_model.objects.values_list("country", flat=True))
    for row in read_rules():
        fields = {k: row[k] for k in ("name", "alphanumeric", "numeric", "note")}
        if row["country"] not in existing:
            country_rule_model.objects.create(country=row["country"], **fields)
            created += 1
        elif update:
            country_rule_model.objects.filter(country=row["country"]).update(**fields)
            updated += 1
    return created, updated

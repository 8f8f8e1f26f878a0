"""A synthetic registry of beneficiaries (docs/registry-format.md), for the demo, the tests and the
provisioning benchmark: `espace-sante registry sample --rows N --out FILE`.

Unique, valid INS-NIR (the key from `make_nir`, birth year and month matching the birth date), French names
and addresses, an e-mail for about 60 %, about 20 % minors linked to one or two adults of the file, a few
deaths, and about 0.1 % bad rows (wrong NIR key, impossible date, missing city) so that the rejects file has
something to show. Everything is drawn from a seeded generator: the same seed writes the same file (apart from
ages, which count from today). Nobody in it exists."""

from __future__ import annotations

import csv
import random
from datetime import date, timedelta
from pathlib import Path

from espace_sante import clock
from espace_sante.fhir.identifiers import make_nir
from espace_sante.spaces.registry.rows import COLUMNS

FAMILY = [
    "Martin",
    "Bernard",
    "Thomas",
    "Petit",
    "Robert",
    "Richard",
    "Durand",
    "Dubois",
    "Moreau",
    "Laurent",
    "Simon",
    "Michel",
    "Lefèbvre",
    "Leroy",
    "Roux",
    "David",
    "Bertrand",
    "Morel",
    "Fournier",
    "Girard",
    "Bonnet",
    "Dupont",
    "Lambert",
    "Fontaine",
    "Rousseau",
    "Vincent",
    "Müller",
    "Lefèvre",
    "Faure",
    "André",
    "Mercier",
    "Blanc",
    "Guérin",
    "Boyer",
    "Garnier",
    "Chevalier",
    "François",
    "Legrand",
    "Gauthier",
    "Garcia",
    "Perrin",
    "Robin",
    "Clément",
    "Morin",
    "Nicolas",
    "Henry",
    "Roussel",
    "Mathieu",
    "Gautier",
    "Masson",
    "Marchand",
    "Duval",
    "Denis",
    "Dumont",
    "Marie",
    "Lemaire",
    "Noël",
    "Meyer",
    "Dufour",
    "Meunier",
    "Brun",
    "Blanchard",
    "Giraud",
    "Joly",
    "Rivière",
    "Lucas",
    "Brunet",
    "Gaillard",
    "Barbier",
    "Arnaud",
    "Martínez",
    "Gérard",
    "Roche",
    "Renard",
    "Schmitt",
    "Roy",
    "Leroux",
    "Colin",
    "Vidal",
    "Caron",
    "Picard",
    "Roger",
    "Fabre",
    "Aubert",
    "Lemoine",
    "Renaud",
    "Dumas",
    "Lacroix",
    "Olivier",
    "Philippe",
    "Bourgeois",
    "Pierre",
    "Benoît",
    "Rey",
    "Leclerc",
    "Payet",
    "Rolland",
    "Leclercq",
    "Guillaume",
    "Lecomte",
    "Lopez",
    "Jean",
    "Dupuy",
    "Guillot",
    "Hubert",
    "Berger",
    "Carpentier",
    "Sánchez",
    "Dupuis",
    "Moulin",
    "Louis",
    "Deschamps",
    "Huet",
    "Vasseur",
    "Perez",
    "Boucher",
    "Fleury",
    "Royer",
    "Klein",
    "Jacquet",
    "Adam",
    "Paris",
    "Poirier",
    "Marty",
    "Aubry",
    "Guyot",
    "Carré",
    "Charles",
    "Renault",
    "Charpentier",
    "Ménard",
    "Maillard",
    "Baron",
    "Bertin",
    "Bailly",
    "Hervé",
    "Schneider",
    "Fernandez",
    "Le",
    "Gall",
    "Collet",
    "Léger",
    "Bouvier",
    "Julien",
    "Prévost",
    "Millet",
    "Perrot",
    "Daniel",
    "Le",
    "Roux",
    "Cousin",
    "Germain",
    "Breton",
    "Besson",
    "Langlois",
    "Rémy",
    "Le",
    "Goff",
    "Pelletier",
    "Lévêque",
    "Perrier",
    "Leblanc",
    "Barré",
    "Lebrun",
    "Marchal",
    "Weber",
    "Mallet",
    "Hamon",
    "Boulanger",
    "Jacob",
    "Monnier",
    "Michaud",
    "Rodríguez",
    "Guichard",
    "Gillet",
    "Étienne",
    "Grondin",
    "Poulain",
    "Tessier",
    "Chevallier",
    "Collin",
    "Chauvin",
    "Da",
    "Silva",
    "Bouchet",
    "Gay",
    "Lemaître",
    "Bénard",
    "Maréchal",
    "Humbert",
    "Reynaud",
    "Antoine",
    "Hoarau",
    "Perret",
    "Barthélemy",
    "Cordier",
    "Pichon",
    "Lejeune",
    "Gilbert",
    "Lamy",
    "Delaunay",
    "Pasquier",
    "Carlier",
    "Laporte",
]
GIVEN_F = [
    "Marie",
    "Jeanne",
    "Françoise",
    "Monique",
    "Catherine",
    "Nathalie",
    "Isabelle",
    "Sylvie",
    "Anne",
    "Martine",
    "Christine",
    "Sophie",
    "Camille",
    "Léa",
    "Chloé",
    "Manon",
    "Inès",
    "Jade",
    "Louise",
    "Emma",
    "Zoé",
    "Lina",
    "Éloïse",
    "Anaïs",
    "Céline",
    "Hélène",
    "Agnès",
    "Mathilde",
    "Clémence",
    "Noémie",
]
GIVEN_M = [
    "Jean",
    "Pierre",
    "Michel",
    "André",
    "Philippe",
    "René",
    "Louis",
    "Alain",
    "Jacques",
    "Bernard",
    "Nicolas",
    "Thomas",
    "Julien",
    "Léo",
    "Gabriel",
    "Raphaël",
    "Arthur",
    "Louis",
    "Hugo",
    "Lucas",
    "Noé",
    "Théo",
    "Mathéo",
    "Jérôme",
    "Stéphane",
    "François",
    "Benoît",
    "Cédric",
    "Loïc",
    "Gaël",
]
STREETS = [
    "rue de la République",
    "avenue Jean-Jaurès",
    "rue Victor-Hugo",
    "place de l'Église",
    "rue Pasteur",
    "boulevard Gambetta",
    "chemin des Vignes",
    "allée des Tilleuls",
    "rue du Général-de-Gaulle",
    "impasse des Érables",
    "quai Saint-Michel",
]
CITIES = (
    ("75011", "Paris"), ("69003", "Lyon"), ("13005", "Marseille"), ("31000", "Toulouse"), ("44000", "Nantes"),
    ("33000", "Bordeaux"), ("59000", "Lille"), ("67000", "Strasbourg"), ("20000", "Ajaccio"),
    ("97400", "Saint-Denis"), ("29200", "Brest"), ("63000", "Clermont-Ferrand"), ("21000", "Dijon"),
)  # fmt: skip
DEPTS = ("75", "69", "13", "31", "44", "33", "59", "67", "2A", "2B", "29", "63", "21", "97", "01", "02")


def _nir(index: int, sex: str, born: date) -> str:
    """A unique NIR for row `index`: (département, commune, rank) come from the index, sex and birth year and
    month from the person."""
    rank = index % 999 + 1
    commune = (index // 999) % 990 + 1
    dept = DEPTS[(index // (999 * 990)) % len(DEPTS)]
    if dept == "97":
        dept, commune = "97", 400 + commune % 90  # overseas: 3-digit commune 4xx
    return make_nir(f"{sex}{born.year % 100:02d}{born.month:02d}{dept}{commune:03d}{rank:03d}")


def generate(path: Path, rows: int, seed: int = 6) -> dict[str, int]:
    """Write a registry of `rows` rows; returns what it holds (bad, minors...)."""
    rng = random.Random(seed)  # noqa: S311 (made-up people, reproducible by seed; codes are elsewhere)
    today = clock.today()
    adults: list[str] = []  # recent adults, parents for the minors that follow
    pending: list[tuple[dict[str, str], int]] = []  # minors whose parent comes a few rows later
    stats = {"rows": rows, "minors": 0, "bad": 0, "with_email": 0, "deceased": 0}
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for i in range(rows):
            minor = rng.random() < 0.2 and len(adults) > 10
            sex = rng.choice("12")
            if minor:
                born = today - timedelta(days=rng.randrange(30, 17 * 365))
            else:
                born = today - timedelta(days=rng.randrange(19 * 365, 95 * 365))
            nir = _nir(i, sex, born)
            postal, city = rng.choice(CITIES)
            row = {c: "" for c in COLUMNS} | {
                "nir": nir,
                "last_name": rng.choice(FAMILY),
                "first_names": " ".join(rng.choice(GIVEN_F if sex == "2" else GIVEN_M) for _ in range(2)),
                "birth_date": born.isoformat(),
                "sex": "F" if sex == "2" else "M",
                "address_line": f"{rng.randrange(1, 200)} {rng.choice(STREETS)}",
                "postal_code": postal,
                "city": city,
            }
            if rng.random() < 0.6:
                local = row["last_name"].lower().replace("\u00a0", "")
                row["email"] = f"{local}.{i}@exemple.fr"
                stats["with_email"] += 1
            if minor:
                stats["minors"] += 1
                parents = rng.sample(adults[-200:], rng.choice((1, 2, 2)))
                row["representative_1_nir"] = parents[0]
                row["representative_2_nir"] = parents[1] if len(parents) > 1 else ""
                if rng.random() < 0.05:  # a parent who is not yet in the registry: next rows
                    pending.append((row, i + rng.randrange(1, 50)))
                    row["representative_2_nir"] = ""
            else:
                adults.append(nir)
                if len(adults) > 1000:
                    del adults[:500]
                if rng.random() < 0.01:
                    row["death_date"] = (born + timedelta(days=rng.randrange(18 * 365, 90 * 365))).isoformat()
                    if row["death_date"] > today.isoformat():
                        row["death_date"] = ""
                    else:
                        stats["deceased"] += 1
            for waiting, _ in [p for p in pending if p[1] == i]:
                waiting["representative_2_nir"] = nir if not minor else ""
            if rng.random() < 0.001:
                stats["bad"] += 1
                kind = rng.randrange(3)
                if kind == 0:
                    row["nir"] = nir[:13] + f"{(int(nir[13:]) % 97) + 1:02d}"
                elif kind == 1:
                    row["birth_date"] = f"{born.year}-02-30"
                else:
                    row["city"] = ""
            writer.writerow(row)
    return stats

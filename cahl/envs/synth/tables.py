"""The fixed tables behind the lookup and conversion tools.

Geography is real (cities, countries, capitals) with rounded figures; products and employees are
invented, so a model cannot answer from memory and has to call the tools. The figures are the
tables' own truth: tools return them, and generated gold answers are computed from them.
"""

from __future__ import annotations

# country -> (capital, population in millions, currency code)
COUNTRIES: dict[str, tuple[str, float, str]] = {
    "France": ("Paris", 68.2, "EUR"),
    "Germany": ("Berlin", 84.5, "EUR"),
    "Italy": ("Rome", 58.9, "EUR"),
    "Spain": ("Madrid", 48.6, "EUR"),
    "United Kingdom": ("London", 68.3, "GBP"),
    "Japan": ("Tokyo", 124.5, "JPY"),
    "Canada": ("Ottawa", 40.1, "CAD"),
    "Australia": ("Canberra", 26.6, "AUD"),
    "India": ("New Delhi", 1428.6, "INR"),
    "Brazil": ("Brasilia", 216.4, "BRL"),
    "Switzerland": ("Bern", 8.8, "CHF"),
    "Mexico": ("Mexico City", 128.5, "MXN"),
    "Kenya": ("Nairobi", 55.1, "KES"),
    "South Korea": ("Seoul", 51.7, "KRW"),
}

# city -> (country, latitude, longitude, mean annual temperature in °C)
CITIES: dict[str, tuple[str, float, float, float]] = {
    "Paris": ("France", 48.857, 2.352, 12.3),
    "Lyon": ("France", 45.764, 4.836, 12.5),
    "Marseille": ("France", 43.296, 5.370, 15.8),
    "Berlin": ("Germany", 52.520, 13.405, 10.3),
    "Munich": ("Germany", 48.137, 11.576, 9.1),
    "Hamburg": ("Germany", 53.551, 9.994, 9.6),
    "Rome": ("Italy", 41.903, 12.496, 15.7),
    "Milan": ("Italy", 45.464, 9.190, 13.1),
    "Madrid": ("Spain", 40.417, -3.704, 15.0),
    "Barcelona": ("Spain", 41.385, 2.173, 16.5),
    "London": ("United Kingdom", 51.507, -0.128, 11.3),
    "Manchester": ("United Kingdom", 53.481, -2.242, 10.2),
    "Tokyo": ("Japan", 35.690, 139.692, 15.8),
    "Osaka": ("Japan", 34.694, 135.502, 16.9),
    "Ottawa": ("Canada", 45.422, -75.697, 6.6),
    "Toronto": ("Canada", 43.653, -79.383, 8.8),
    "Vancouver": ("Canada", 49.283, -123.121, 11.0),
    "Canberra": ("Australia", -35.281, 149.130, 13.1),
    "Sydney": ("Australia", -33.869, 151.209, 18.4),
    "Melbourne": ("Australia", -37.814, 144.963, 15.1),
    "New Delhi": ("India", 28.614, 77.209, 25.0),
    "Mumbai": ("India", 19.076, 72.878, 27.2),
    "Brasilia": ("Brazil", -15.794, -47.882, 21.2),
    "Sao Paulo": ("Brazil", -23.551, -46.633, 19.3),
    "Bern": ("Switzerland", 46.948, 7.447, 9.0),
    "Zurich": ("Switzerland", 47.377, 8.541, 9.3),
    "Mexico City": ("Mexico", 19.433, -99.133, 16.6),
    "Nairobi": ("Kenya", -1.292, 36.822, 18.0),
    "Seoul": ("South Korea", 37.567, 126.978, 12.8),
    "Busan": ("South Korea", 35.180, 129.076, 15.0),
}

# currency code -> units per 1 USD (a fixed table, not live rates); strings so Decimal is exact
RATES_PER_USD: dict[str, str] = {
    "USD": "1", "EUR": "0.92", "GBP": "0.79", "JPY": "151.5", "CAD": "1.36", "AUD": "1.52",
    "INR": "83.3", "BRL": "5.05", "CHF": "0.9", "MXN": "17.1", "KES": "131", "KRW": "1345",
}

# product -> (price in USD, weight in kg, country of manufacture)
PRODUCTS: dict[str, tuple[float, float, str]] = {
    "Nimbus Kettle": (39.99, 1.2, "Germany"),
    "Aurora Desk Lamp": (54.5, 2.3, "Italy"),
    "Trail Runner Shoes": (119.0, 0.8, "Brazil"),
    "Harbor Coffee Grinder": (89.95, 3.1, "Switzerland"),
    "Polar Sleeping Bag": (149.0, 1.9, "Canada"),
    "Sakura Tea Set": (72.0, 2.6, "Japan"),
    "Koala Backpack": (64.25, 1.1, "Australia"),
    "Saffron Spice Box": (28.4, 0.6, "India"),
    "Atlas Road Bike": (899.0, 9.8, "Spain"),
    "Monarch Wristwatch": (349.99, 0.15, "Switzerland"),
    "Aztec Ceramic Vase": (45.0, 3.4, "Mexico"),
    "Savanna Throw Blanket": (58.0, 1.7, "Kenya"),
    "Hanok Rice Cooker": (129.0, 4.2, "South Korea"),
    "Thames Umbrella": (24.99, 0.7, "United Kingdom"),
    "Loire Wine Rack": (79.0, 5.5, "France"),
}

# employee -> (department, annual salary in USD, start date, office city)
EMPLOYEES: dict[str, tuple[str, int, str, str]] = {
    "Ana Ruiz": ("Engineering", 98000, "2019-04-15", "Madrid"),
    "Ben Okafor": ("Engineering", 87500, "2021-09-01", "Lyon"),
    "Chen Wei": ("Engineering", 91200, "2020-02-17", "Toronto"),
    "Dara Singh": ("Marketing", 76000, "2018-06-11", "Mumbai"),
    "Eva Novak": ("Marketing", 64300, "2022-01-10", "Munich"),
    "Farid Haddad": ("Marketing", 69900, "2023-03-06", "London"),
    "Grace Kim": ("Finance", 102000, "2016-11-28", "Seoul"),
    "Hugo Martin": ("Finance", 72500, "2021-05-24", "Paris"),
    "Ines Costa": ("Finance", 68800, "2022-08-15", "Sao Paulo"),
    "Jonas Weber": ("Logistics", 81000, "2017-03-20", "Hamburg"),
    "Keiko Sato": ("Logistics", 59400, "2023-10-02", "Osaka"),
    "Liam Walsh": ("Logistics", 61750, "2020-07-13", "Manchester"),
    "Maya Patel": ("Customer Support", 70500, "2018-01-08", "New Delhi"),
    "Nico Rossi": ("Customer Support", 52300, "2024-02-19", "Milan"),
    "Olivia Brown": ("Customer Support", 54800, "2022-11-21", "Sydney"),
    "Pablo Mendez": ("Research", 110000, "2015-09-14", "Mexico City"),
    "Quinn Taylor": ("Research", 95600, "2021-12-06", "Vancouver"),
    "Rosa Kamau": ("Research", 88300, "2019-10-28", "Nairobi"),
}

# department -> its manager (an employee of that department)
MANAGERS: dict[str, str] = {
    "Engineering": "Ana Ruiz",
    "Marketing": "Dara Singh",
    "Finance": "Grace Kim",
    "Logistics": "Jonas Weber",
    "Customer Support": "Maya Patel",
    "Research": "Pablo Mendez",
}

# unit -> size in the family's base unit (metre, kilogram); strings so Decimal is exact
METRES_PER: dict[str, str] = {
    "mm": "0.001", "cm": "0.01", "m": "1", "km": "1000",
    "in": "0.0254", "ft": "0.3048", "yd": "0.9144", "mi": "1609.344",
}
KILOGRAMS_PER: dict[str, str] = {
    "mg": "0.000001", "g": "0.001", "kg": "1", "t": "1000",
    "oz": "0.028349523125", "lb": "0.45359237",
}
TEMPERATURE_SCALES = ("C", "F", "K")

UNIT_WORDS: dict[str, str] = {
    "mm": "millimetres", "cm": "centimetres", "m": "metres", "km": "kilometres", "in": "inches",
    "ft": "feet", "yd": "yards", "mi": "miles", "mg": "milligrams", "g": "grams", "kg": "kilograms",
    "t": "tonnes", "oz": "ounces", "lb": "pounds", "C": "degrees Celsius", "F": "degrees Fahrenheit",
    "K": "kelvin",
}

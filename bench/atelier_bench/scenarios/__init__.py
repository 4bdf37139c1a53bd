"""Every scenario bench/drive.py runs, by name, in the order `all` runs them. Each is a
runner.Scenario: what it prepares, which targets it drives each round, and how its
result reads."""

from .compress import Compress
from .fill import Fill
from .mixes import MixScenario
from .pageview import PageView
from .soak import Soak

SCENARIOS = {
    "hot": lambda: MixScenario("hot"),
    "uniform": lambda: MixScenario("uniform"),
    "list": lambda: MixScenario("list"),
    "storefront": lambda: MixScenario("storefront"),
    "cold": lambda: MixScenario("cold"),
    "t2micro": lambda: MixScenario("t2micro"),
    "soak": Soak,
    "compress": Compress,
    "fill": Fill,
    "pageview": PageView,
}

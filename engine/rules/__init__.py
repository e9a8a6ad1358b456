"""The rules language: load, validate and model ``rules/*.yaml``."""

from engine.rules.loader import RulesError, check_rules, load_rules
from engine.rules.model import Product, Rules, TransitionRule
from engine.rules.source import Problem

__all__ = ["Problem", "Product", "Rules", "RulesError", "TransitionRule", "check_rules", "load_rules"]

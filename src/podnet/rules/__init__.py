"""nftables rule rendering, pure: model objects in, nft transactions out."""

from podnet.rules.ruleset import render_ruleset
from podnet.rules.transaction import BaseChain, Rule, Transaction

__all__ = ["BaseChain", "Rule", "Transaction", "render_ruleset"]

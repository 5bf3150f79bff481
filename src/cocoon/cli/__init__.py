"""cocoon.cli"""

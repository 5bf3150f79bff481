"""cocoon.inference"""

"""cocoon.net"""

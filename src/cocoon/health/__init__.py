"""cocoon.health"""

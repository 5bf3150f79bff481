"""cocoon.proxy"""

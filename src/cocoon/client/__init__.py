"""cocoon.client"""

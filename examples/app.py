"""A small order-processing program traced by the README's main command."""

import asyncio
import threading


class Inventory:
    def __init__(self):
        self.stock = {"apple": 5, "pear": 2, "plum": 0}

    def reserve(self, item, qty):
        if self.stock.get(item, 0) < qty:
            raise ValueError(f"out of stock: {item}")
        self.stock[item] -= qty
        return qty


def price(item, qty):
    return {"apple": 3, "pear": 4, "plum": 5}[item] * qty


def checkout(inventory, order):
    total = 0
    for item, qty in order:
        try:
            inventory.reserve(item, qty)
            total += price(item, qty)
        except ValueError as exc:
            report(exc)
    return total


def report(exc):
    return str(exc)


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


async def fetch(i):
    await asyncio.sleep(0.001)
    return fib(10 + i % 3)


async def gather_all():
    return await asyncio.gather(*(fetch(i) for i in range(5)))


def background():
    return sum(fib(12) for _ in range(3))


def main():
    inv = Inventory()
    print("total:", checkout(inv, [("apple", 2), ("pear", 1), ("plum", 1)]))
    worker = threading.Thread(target=background)
    worker.start()
    print("async:", asyncio.run(gather_all()))
    worker.join()


if __name__ == "__main__":
    main()

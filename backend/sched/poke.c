/* poke: the committed-frame flag (poke.h). */
#include "sched/poke.h"

#include <stdatomic.h>

static atomic_int poked;

void sched_poke(void)
{
	atomic_store(&poked, 1);
}

bool sched_poke_take(void)
{
	return atomic_exchange(&poked, 0) != 0;
}

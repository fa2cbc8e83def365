/* Physical frames, address spaces, demand paging and copy on write.
 *
 * Every address space shares the kernel's identity map (PDPT slots 0 and 3, supervisor-only) and
 * has its own PDPT slot 1 (0x40000000-0x7FFFFFFF) for ring 3: the program image read-only at
 * 0x40000000, then heap and stack pages that are allocated, zeroed, on first touch. Fork shares
 * the private pages read-only (PTE_COW) and the first write to one copies it.
 *
 * Paravirtually (direct paging, pvops_pv.c) the kernel runs at CPL 3, where supervisor-only means
 * nothing: the identity map is the kernel root's (slot 0 only, 4 KiB pages, page tables read-only)
 * and each address space adds a user root whose only entry is the same slot 1. Fork, exit and
 * copy-on-write update page tables in lazy MMU mode, so that their updates go in batches. */
#include "kernel.h"

extern u64 boot_pml4[512], boot_pd0[512];

u64 kernel_pml4;
static u64 next_frame, frames_end, free_list, in_use;
static u64 scratch_pt[512] __attribute__((aligned(4096)));
/* How many address spaces map each frame (the identity map covers 1 GiB). */
#define MAX_FRAMES (0x40000000UL / PAGE_SIZE)
static u8 frame_refs[MAX_FRAMES];
#define PTE_COW (1UL << 9) /* software bit: shared since a fork, copied on the first write */

#define IDX(va, level) (((va) >> (12 + 9 * (level))) & 511)
#define TABLE_FLAGS (PTE_P | PTE_W | PTE_U)

void mm_init(u64 first_free, u64 end) {
    next_frame = (first_free + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
    frames_end = end & ~(PAGE_SIZE - 1);
    if (pvops.separate_user_root) {
        pv_mm_init(frames_end); /* the kernel root, with the scratch page table in it */
    } else {
        kernel_pml4 = (u64)boot_pml4;
        /* The last 2 MiB of the first GiB become 4 KiB pages: the kernel's scratch mapping. */
        pvops.set_pte(&boot_pd0[511], (u64)scratch_pt | PTE_P | PTE_W);
        pvops.invlpg(KERNEL_SCRATCH_VA);
    }
    clock_frame = frame_alloc();
}

u64 *kernel_scratch_pte(void) { return &scratch_pt[IDX(KERNEL_SCRATCH_VA, 0)]; }

u64 frame_alloc(void) {
    u64 f;
    if (free_list) {
        f = free_list;
        free_list = *(u64 *)f;
    } else if (next_frame < frames_end) {
        f = next_frame;
        next_frame += PAGE_SIZE;
    } else {
        machine_exit(false, "out of physical memory");
    }
    in_use++;
    frame_refs[f / PAGE_SIZE] = 1;
    memset((void *)f, 0, PAGE_SIZE);
    return f;
}

void frame_free(u64 f) {
    *(u64 *)f = free_list;
    free_list = f;
    in_use--;
}

u64 frames_in_use(void) { return in_use; }

/* Drops one mapping of a user page; the last one frees it. */
static void page_unref(u64 f) {
    if (--frame_refs[f / PAGE_SIZE] == 0)
        frame_free(f);
}

u64 clock_frame; /* the page behind USER_CLOCK_PAGE, the same in every address space */

/* Pages every address space shares: the program image and the clock page. */
static bool is_shared(u64 va) {
    return (va >= USER_TEXT_BASE && va < (u64)__user_end) || va == USER_CLOCK_PAGE;
}

/* The user PTE for va (which must be in PDPT slot 1), creating the tables on the way if asked.
 * A new table's link is made at once (mmu_flush), even in lazy MMU mode: the walk reads it back. */
u64 *aspace_pte(u64 pml4, u64 va, bool create) {
    u64 *table = (u64 *)pml4;
    for (int level = 3; level > 0; level--) {
        u64 *entry = &table[IDX(va, level)];
        if (!(*entry & PTE_P)) {
            if (!create)
                return NULL;
            pvops.set_pte(entry, pvops.table_alloc() | TABLE_FLAGS);
            pvops.mmu_flush();
        }
        table = (u64 *)(*entry & PTE_ADDR);
    }
    return &table[IDX(va, 0)];
}

u64 aspace_create(u64 *user_root) {
    u64 pml4 = pvops.table_alloc(), pdpt = pvops.table_alloc();
    u64 *kernel_pdpt = (u64 *)(((u64 *)kernel_pml4)[0] & PTE_ADDR);
    pvops.set_pte(&((u64 *)pml4)[0], pdpt | TABLE_FLAGS);
    pvops.set_pte(&((u64 *)pdpt)[0], kernel_pdpt[0]);
    pvops.set_pte(&((u64 *)pdpt)[3], kernel_pdpt[3]);
    pvops.mmu_flush(); /* the walks below read these links back */
    u64 image = (u64)__user_image_phys;
    for (u64 va = USER_TEXT_BASE; va < (u64)__user_end; va += PAGE_SIZE)
        pvops.set_pte(aspace_pte(pml4, va, true), (image + va - USER_TEXT_BASE) | PTE_P | PTE_U);
    pvops.set_pte(aspace_pte(pml4, USER_CLOCK_PAGE, true), clock_frame | PTE_P | PTE_U);
    *user_root = 0;
    if (pvops.separate_user_root) { /* the user slot's PD exists: the image is mapped */
        u64 user_pml4 = pvops.table_alloc(), user_pdpt = pvops.table_alloc();
        pvops.set_pte(&((u64 *)user_pml4)[0], user_pdpt | TABLE_FLAGS);
        pvops.set_pte(&((u64 *)user_pdpt)[1], ((u64 *)pdpt)[1]);
        *user_root = user_pml4;
    }
    pvops.aspace_ready(pml4, *user_root);
    return pml4;
}

/* Calls fn on every present ring-3 page of the address space (slot 1 only). */
static void for_each_user_page(u64 pml4, void (*fn)(u64 va, u64 *pte, void *ctx), void *ctx) {
    u64 *pdpt = (u64 *)(((u64 *)pml4)[0] & PTE_ADDR);
    u64 *pd = (u64 *)(pdpt[1] & PTE_ADDR);
    if (!(pdpt[1] & PTE_P))
        return;
    for (int i = 0; i < 512; i++) {
        if (!(pd[i] & PTE_P))
            continue;
        u64 *pt = (u64 *)(pd[i] & PTE_ADDR);
        for (int j = 0; j < 512; j++)
            if (pt[j] & PTE_P)
                fn(USER_TEXT_BASE + ((u64)i << 21) + ((u64)j << 12), &pt[j], ctx);
    }
}

/* Fork: the child maps the parent's private page too, both read-only until one writes. */
static void share_page(u64 va, u64 *pte, void *child) {
    if (is_shared(va))
        return; /* mapped by aspace_create */
    u64 entry = *pte;
    if (entry & PTE_W) {
        entry = (entry & ~PTE_W) | PTE_COW;
        pvops.set_pte(pte, entry);
        pvops.invlpg(va); /* the parent's address space is the current one */
    }
    frame_refs[(entry & PTE_ADDR) / PAGE_SIZE]++;
    pvops.set_pte(aspace_pte(*(u64 *)child, va, true), entry);
}

/* A write to a copy-on-write page: copy it unless no one else maps it any more. */
static bool copy_on_write(u64 page) {
    u64 *pte = aspace_pte(current->pml4, page, false);
    if (!pte || !(*pte & PTE_COW))
        return false;
    u64 frame = *pte & PTE_ADDR, flags = (*pte & ~PTE_ADDR & ~PTE_COW) | PTE_W;
    if (frame_refs[frame / PAGE_SIZE] > 1) {
        u64 copy = frame_alloc();
        memcpy((void *)copy, (void *)frame, PAGE_SIZE);
        page_unref(frame);
        frame = copy;
    }
    lazy_mmu_begin();
    pvops.set_pte(pte, frame | flags);
    pvops.invlpg(page);
    lazy_mmu_end();
    return true;
}

u64 aspace_clone(u64 pml4, u64 *user_root) {
    lazy_mmu_begin();
    u64 child = aspace_create(user_root);
    for_each_user_page(pml4, share_page, &child);
    lazy_mmu_end();
    return child;
}

/* Exit unmaps every page before the tables go, as Linux's zap_pte_range does: a VMM that shadows
 * the tables sees each of these writes. */
static void free_page(u64 va, u64 *pte, void *unused) {
    u64 entry = *pte;
    if (pvops.pte_clear_full)
        pvops.pte_clear_full(pte);
    if (!is_shared(va))
        page_unref(entry & PTE_ADDR);
}

void aspace_destroy(u64 pml4, u64 user_root) {
    lazy_mmu_begin();
    pvops.aspace_release(pml4, user_root);
    for_each_user_page(pml4, free_page, NULL);
    u64 *pdpt = (u64 *)(((u64 *)pml4)[0] & PTE_ADDR);
    if (pdpt[1] & PTE_P) {
        u64 *pd = (u64 *)(pdpt[1] & PTE_ADDR);
        for (int i = 0; i < 512; i++)
            if (pd[i] & PTE_P)
                pvops.table_free(pd[i] & PTE_ADDR);
        pvops.table_free((u64)pd);
    }
    pvops.table_free((u64)pdpt);
    pvops.table_free(pml4);
    if (user_root) {
        pvops.table_free(((u64 *)user_root)[0] & PTE_ADDR);
        pvops.table_free(user_root);
    }
    lazy_mmu_end();
}

/* The pgfault benchmark's region: touching one of its two pages unmaps the other, so every
 * access faults; the kernel writes the process's fault count into the fresh page. */
static void pgfault_region_fault(u64 page) {
    u64 other = page ^ PAGE_SIZE;
    u64 *other_pte = aspace_pte(current->pml4, other, false);
    if (other_pte && (*other_pte & PTE_P)) {
        u64 frame = *other_pte & PTE_ADDR;
        pvops.set_pte(other_pte, 0);
        pvops.invlpg(other);
        page_unref(frame);
    }
    u64 frame = frame_alloc();
    *(u64 *)frame = ++current->pgfault_count;
    pvops.set_pte(aspace_pte(current->pml4, page, true), frame | PTE_P | PTE_W | PTE_U);
}

/* Whether the kernel may read [va, va + len) on behalf of the current process: every page is
 * mapped for ring 3, or a demand-paged one that a touch will bring in. */
static bool demand_paged(u64 va) {
    return (va >= USER_HEAP_BASE && va < USER_HEAP_END) ||
           (va >= USER_STACK_LOW && va < USER_STACK_TOP);
}

bool user_readable(u64 va, u64 len) {
    if (va < USER_TEXT_BASE || len > USER_STACK_TOP + PAGE_SIZE - va || !current)
        return false;
    for (u64 page = va & ~(PAGE_SIZE - 1); page < va + len; page += PAGE_SIZE) {
        u64 *pte = aspace_pte(current->pml4, page, false);
        if (!(pte && (*pte & PTE_P) && (*pte & PTE_U)) && !demand_paged(page))
            return false;
    }
    return true;
}

#define PF_PRESENT (1UL << 0) /* the error code: a protection fault, not a missing page */
#define PF_WRITE (1UL << 1)

bool handle_page_fault(struct trapframe *tf, u64 addr) {
    u64 page = addr & ~(PAGE_SIZE - 1);
    if (!current || addr < USER_TEXT_BASE || addr >= USER_STACK_TOP + PAGE_SIZE)
        return false;
    if (tf->error & PF_PRESENT)
        return (tf->error & PF_WRITE) && copy_on_write(page);
    if (addr >= USER_FAULT_BASE && addr < USER_FAULT_END) {
        pgfault_region_fault(page);
        return true;
    }
    if (!demand_paged(addr))
        return false;
    pvops.set_pte(aspace_pte(current->pml4, page, true), frame_alloc() | PTE_P | PTE_W | PTE_U);
    return true;
}

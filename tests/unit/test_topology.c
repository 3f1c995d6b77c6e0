/* test_topology.c - prefill/decode placement: same node, then same switch,
 * then anywhere; balanced; nearest pairs placed first; topology addresses
 * compared by component; the environment read by job_topo_id_self. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job/topology.h"

#define R JOB_ROLE_ROUTER
#define P JOB_ROLE_PREFILL
#define D JOB_ROLE_DECODE
#define MAXR 16

/* places[r] is "host" or "host@topology.addr" */
static void ids_from(int n, const char *const *places, job_topo_id_t *ids)
{
    for (int r = 0; r < n; r++) {
        memset(&ids[r], 0, sizeof ids[r]);
        const char *at = strchr(places[r], '@');
        size_t hl = at ? (size_t)(at - places[r]) : strlen(places[r]);
        memcpy(ids[r].host, places[r], hl);
        if (at) strcpy(ids[r].addr, at + 1);
    }
}

static void place(int n, const job_role_t *roles, const char *const *places, int *pair, job_near_t *near)
{
    job_topo_id_t ids[MAXR];
    ids_from(n, places, ids);
    assert_int_equal(job_topo_pair(n, roles, ids, pair, near), RT_OK);
    for (int r = 0; r < n; r++) {
        if (roles[r] == P) {
            assert_true(pair[r] >= 0 && pair[r] < n);
            assert_int_equal(roles[pair[r]], D);
            assert_int_not_equal(near[r], JOB_NEAR_NONE);
        } else {
            assert_int_equal(pair[r], -1);
            assert_int_equal(near[r], JOB_NEAR_NONE);
        }
    }
}

static void test_same_node_first(void **state)
{
    (void)state;
    /* rank order alone would pair 1->3 and 2->4; the nodes say 1->4, 2->3 */
    job_role_t roles[] = {R, P, P, D, D};
    const char *places[] = {"a@t.s0.a", "b@t.s0.b", "c@t.s0.c", "c@t.s0.c", "b@t.s0.b"};
    int pair[5];
    job_near_t near[5];
    place(5, roles, places, pair, near);
    assert_int_equal(pair[1], 4);
    assert_int_equal(pair[2], 3);
    assert_int_equal(near[1], JOB_NEAR_NODE);
    assert_int_equal(near[2], JOB_NEAR_NODE);
}

/* the nearness rank 0 picks a prefill rank by: node > leaf switch > parent
 * switch > fabric, and the class */
static void test_nearness(void **state)
{
    (void)state;
    const char *places[] = {"a@t.s0.a", "a@t.s0.a", "b@t.s0.b", "c@t.s1.c", "d@u.s9.d", "e", "e"};
    job_topo_id_t ids[7];
    ids_from(7, places, ids);
    job_near_t n;
    const int node = job_topo_nearness(&ids[0], &ids[1], &n);
    assert_int_equal(n, JOB_NEAR_NODE);
    const int sw = job_topo_nearness(&ids[0], &ids[2], &n);
    assert_int_equal(n, JOB_NEAR_SWITCH);
    const int parent = job_topo_nearness(&ids[0], &ids[3], &n);
    assert_int_equal(n, JOB_NEAR_FABRIC);
    const int far = job_topo_nearness(&ids[0], &ids[4], NULL);
    assert_true(node > sw && sw > parent && parent > far);
    assert_int_equal(job_topo_nearness(&ids[5], &ids[6], &n), node); /* no topology address: the host */
    assert_int_equal(n, JOB_NEAR_NODE);
}

static void test_same_switch_next(void **state)
{
    (void)state;
    /* prefill on n1 (switch s0); decode on n3 (s1) and n2 (s0): n2 wins */
    job_role_t roles[] = {R, P, D, D};
    const char *places[] = {"n0@top.s0.n0", "n1@top.s0.n1", "n3@top.s1.n3", "n2@top.s0.n2"};
    int pair[4];
    job_near_t near[4];
    place(4, roles, places, pair, near);
    assert_int_equal(pair[1], 3);
    assert_int_equal(near[1], JOB_NEAR_SWITCH);
}

static void test_parent_switch_before_far(void **state)
{
    (void)state;
    /* no decode rank under g0.s0; the one under g0 (another leaf) beats the
     * one under g1, and both are "fabric" */
    job_role_t roles[] = {R, P, D, D};
    const char *places[] = {"n0@top.g1.s9.n0", "n1@top.g0.s0.n1", "n3@top.g1.s2.n3", "n2@top.g0.s1.n2"};
    int pair[4];
    job_near_t near[4];
    place(4, roles, places, pair, near);
    assert_int_equal(pair[1], 3);
    assert_int_equal(near[1], JOB_NEAR_FABRIC);
}

static void test_components_not_characters(void **state)
{
    (void)state;
    /* "s1" is a prefix of "s10" as text, not as a switch */
    job_role_t roles[] = {R, P, D, D};
    const char *places[] = {"x", "a@top.s1.a", "b@top.s10.b", "c@top.s1.c"};
    int pair[4];
    job_near_t near[4];
    place(4, roles, places, pair, near);
    assert_int_equal(pair[1], 3);
    assert_int_equal(near[1], JOB_NEAR_SWITCH);
    /* with only the s10 decode rank, it is fabric, not switch */
    roles[3] = JOB_ROLE_WORKER;
    place(4, roles, places, pair, near);
    assert_int_equal(pair[1], 2);
    assert_int_equal(near[1], JOB_NEAR_FABRIC);
}

static void test_balanced(void **state)
{
    (void)state;
    /* four prefill ranks and two decode ranks on one node: two each */
    job_role_t roles[] = {R, P, P, P, P, D, D};
    const char *places[] = {"h", "h", "h", "h", "h", "h", "h"};
    int pair[7];
    job_near_t near[7];
    place(7, roles, places, pair, near);
    int load5 = 0, load6 = 0;
    for (int r = 1; r <= 4; r++) {
        assert_int_equal(near[r], JOB_NEAR_NODE);
        load5 += pair[r] == 5;
        load6 += pair[r] == 6;
    }
    assert_int_equal(load5, 2);
    assert_int_equal(load6, 2);
}

static void test_nearest_tier_placed_first(void **state)
{
    (void)state;
    /* prefill 1 (node a) sees decode 3 (node c) and 4 (node d) on its
     * switch; prefill 2 shares node c with decode 3. In rank order 1 would
     * take 3 and 2 would pile onto it; nearest first gives 2->3, then 1->4. */
    job_role_t roles[] = {R, P, P, D, D};
    const char *places[] = {"r@t.s0.r", "a@t.s0.a", "c@t.s0.c", "c@t.s0.c", "d@t.s0.d"};
    int pair[5];
    job_near_t near[5];
    place(5, roles, places, pair, near);
    assert_int_equal(pair[2], 3);
    assert_int_equal(near[2], JOB_NEAR_NODE);
    assert_int_equal(pair[1], 4);
    assert_int_equal(near[1], JOB_NEAR_SWITCH);
}

static void test_no_topology(void **state)
{
    (void)state;
    /* no SLURM_TOPOLOGY_ADDR: other hosts are all "fabric", spread evenly */
    job_role_t roles[] = {R, P, P, P, P, D, D, JOB_ROLE_WORKER};
    const char *places[] = {"h0", "h1", "h2", "h3", "h4", "h5", "h6", "h1"};
    int pair[8];
    job_near_t near[8];
    place(8, roles, places, pair, near);
    int load5 = 0;
    for (int r = 1; r <= 4; r++) {
        assert_int_equal(near[r], JOB_NEAR_FABRIC);
        load5 += pair[r] == 5;
    }
    assert_int_equal(load5, 2);
    /* an empty host name is unknown, never "the same node" */
    const char *blank[] = {"", "", "", "", "", "", "", ""};
    place(8, roles, blank, pair, near);
    for (int r = 1; r <= 4; r++) assert_int_equal(near[r], JOB_NEAR_FABRIC);
}

static void test_refusals_and_empty(void **state)
{
    (void)state;
    job_topo_id_t ids[3];
    const char *places[] = {"a", "a", "a"};
    ids_from(3, places, ids);
    int pair[3] = {7, 7, 7};
    job_near_t near[3] = {JOB_NEAR_NODE, JOB_NEAR_NODE, JOB_NEAR_NODE};
    job_role_t no_decode[] = {R, P, JOB_ROLE_WORKER};
    assert_int_equal(job_topo_pair(3, no_decode, ids, pair, near), RT_ERR_INVALID);
    assert_non_null(strstr(rt_error_msg(), "no decode rank"));
    assert_int_equal(pair[0], 7); /* outputs untouched on failure */
    job_role_t aggregated[] = {R, JOB_ROLE_WORKER, JOB_ROLE_WORKER};
    assert_int_equal(job_topo_pair(3, aggregated, ids, pair, near), RT_OK);
    for (int r = 0; r < 3; r++) {
        assert_int_equal(pair[r], -1);
        assert_int_equal(near[r], JOB_NEAR_NONE);
    }
}

static void test_describe(void **state)
{
    (void)state;
    int pair[] = {-1, 3, 4, -1, -1, 3};
    job_near_t near[] = {JOB_NEAR_NONE, JOB_NEAR_NODE, JOB_NEAR_SWITCH, JOB_NEAR_NONE, JOB_NEAR_NONE,
                         JOB_NEAR_FABRIC};
    char buf[128];
    const char *want = "1->3 node, 2->4 switch, 5->3 fabric";
    assert_int_equal(job_topo_describe(6, pair, near, buf, sizeof buf), (int)strlen(want));
    assert_string_equal(buf, want);
    char small[8];
    assert_int_equal(job_topo_describe(6, pair, near, small, sizeof small), (int)strlen(want));
    assert_string_equal(small, "1->3 no");
    int none[] = {-1, -1};
    assert_int_equal(job_topo_describe(2, none, near, buf, sizeof buf), 0);
    assert_string_equal(buf, "");
}

static void test_id_from_env(void **state)
{
    (void)state;
    job_topo_id_t id;
    setenv("SLURMD_NODENAME", "node17", 1);
    setenv("SLURM_TOPOLOGY_ADDR", "top.s3.node17", 1);
    assert_int_equal(job_topo_id_self(&id), RT_OK);
    assert_string_equal(id.host, "node17");
    assert_string_equal(id.addr, "top.s3.node17");

    unsetenv("SLURMD_NODENAME");
    unsetenv("SLURM_TOPOLOGY_ADDR");
    char host[JOB_TOPO_HOST_MAX] = "";
    assert_int_equal(gethostname(host, sizeof host), 0);
    assert_int_equal(job_topo_id_self(&id), RT_OK);
    assert_string_equal(id.host, host);
    assert_string_equal(id.addr, "");

    char longaddr[JOB_TOPO_ADDR_MAX + 8];
    memset(longaddr, 's', sizeof longaddr - 1);
    longaddr[sizeof longaddr - 1] = '\0';
    setenv("SLURM_TOPOLOGY_ADDR", longaddr, 1);
    memset(&id, 0x5a, sizeof id);
    assert_int_equal(job_topo_id_self(&id), RT_ERR_RANGE);
    assert_non_null(strstr(rt_error_msg(), "SLURM_TOPOLOGY_ADDR"));
    assert_int_equal((unsigned char)id.host[0], 0x5a); /* untouched on failure */
    unsetenv("SLURM_TOPOLOGY_ADDR");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_node_first),
        cmocka_unit_test(test_nearness),
        cmocka_unit_test(test_same_switch_next),
        cmocka_unit_test(test_parent_switch_before_far),
        cmocka_unit_test(test_components_not_characters),
        cmocka_unit_test(test_balanced),
        cmocka_unit_test(test_nearest_tier_placed_first),
        cmocka_unit_test(test_no_topology),
        cmocka_unit_test(test_refusals_and_empty),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_id_from_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/**
 * The small table of facts the speedrun's model learns and is asked about. It ships in code
 * so the pipeline needs no data and no network. Each row: English and Chinese names.
 */
export interface Fact {
  country: { en: string; zh: string };
  capital: { en: string; zh: string };
  continent: { en: string; zh: string };
}

const row = (cen: string, czh: string, pen: string, pzh: string, ken: string, kzh: string): Fact => ({
  country: { en: cen, zh: czh },
  capital: { en: pen, zh: pzh },
  continent: { en: ken, zh: kzh },
});

export const FACTS: readonly Fact[] = [
  row("France", "法国", "Paris", "巴黎", "Europe", "欧洲"),
  row("Germany", "德国", "Berlin", "柏林", "Europe", "欧洲"),
  row("Italy", "意大利", "Rome", "罗马", "Europe", "欧洲"),
  row("Spain", "西班牙", "Madrid", "马德里", "Europe", "欧洲"),
  row("Russia", "俄罗斯", "Moscow", "莫斯科", "Europe", "欧洲"),
  row("Greece", "希腊", "Athens", "雅典", "Europe", "欧洲"),
  row("Egypt", "埃及", "Cairo", "开罗", "Africa", "非洲"),
  row("Kenya", "肯尼亚", "Nairobi", "内罗毕", "Africa", "非洲"),
  row("China", "中国", "Beijing", "北京", "Asia", "亚洲"),
  row("Japan", "日本", "Tokyo", "东京", "Asia", "亚洲"),
  row("India", "印度", "New Delhi", "新德里", "Asia", "亚洲"),
  row("Thailand", "泰国", "Bangkok", "曼谷", "Asia", "亚洲"),
  row("Canada", "加拿大", "Ottawa", "渥太华", "North America", "北美洲"),
  row("Mexico", "墨西哥", "Mexico City", "墨西哥城", "North America", "北美洲"),
  row("Brazil", "巴西", "Brasilia", "巴西利亚", "South America", "南美洲"),
  row("Argentina", "阿根廷", "Buenos Aires", "布宜诺斯艾利斯", "South America", "南美洲"),
  row("Peru", "秘鲁", "Lima", "利马", "South America", "南美洲"),
  row("Australia", "澳大利亚", "Canberra", "堪培拉", "Oceania", "大洋洲"),
];
